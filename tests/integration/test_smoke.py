import pytest

pytestmark = pytest.mark.integration


async def test_create_and_get(scim):
    created = await scim.post("/Users", {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "a@b.c"})
    assert created.status == 201, created.json()
    got = await scim.get(f"/Users/{created.json()['id']}")
    assert got.status == 200, got.json()
    print(got.json())
