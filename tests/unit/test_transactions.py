"""Reading a $batch answer (RFC 2046 multipart/mixed, as the Table service writes it)."""

from __future__ import annotations

from scim.storage.transactions import _failure, parse_multipart

ANSWER = (
    "--batchresponse_1\r\n"
    "Content-Type: multipart/mixed; boundary=changesetresponse_2\r\n"
    "\r\n"
    "--changesetresponse_2\r\n"
    "Content-Type: application/http\r\n"
    "Content-Transfer-Encoding: binary\r\n"
    "\r\n"
    "HTTP/1.1 204 No Content\r\n"
    "X-Content-Type-Options: nosniff\r\n"
    "Cache-Control: no-cache\r\n"
    "DataServiceVersion: 1.0;\r\n"
    "ETag: W/\"datetime'2026-11-30T08%3A45%3A00.1Z'\"\r\n"
    "\r\n"
    "\r\n"
    "--changesetresponse_2\r\n"
    "Content-Type: application/http\r\n"
    "Content-Transfer-Encoding: binary\r\n"
    "\r\n"
    "HTTP/1.1 204 No Content\r\n"
    "DataServiceVersion: 1.0;\r\n"
    "\r\n"
    "\r\n"
    "--changesetresponse_2--\r\n"
    "--batchresponse_1--\r\n"
)

FAILED = (
    "--batchresponse_1\r\n"
    "Content-Type: multipart/mixed; boundary=changesetresponse_2\r\n"
    "\r\n"
    "--changesetresponse_2\r\n"
    "Content-Type: application/http\r\n"
    "Content-Transfer-Encoding: binary\r\n"
    "\r\n"
    "HTTP/1.1 409 Conflict\r\n"
    "Content-Type: application/json;odata=minimalmetadata;streaming=true;charset=utf-8\r\n"
    "\r\n"
    '{"odata.error":{"code":"EntityAlreadyExists","message":{"lang":"en-US",'
    '"value":"2:The specified entity already exists.\\nRequestId:abc"}}}\r\n'
    "--changesetresponse_2--\r\n"
    "--batchresponse_1--\r\n"
)


def test_each_operations_status_and_etag_are_read():
    answers = parse_multipart("multipart/mixed; boundary=batchresponse_1", ANSWER)
    assert [status for status, _, _ in answers] == [204, 204]
    assert answers[0][1]["etag"] == "W/\"datetime'2026-11-30T08%3A45%3A00.1Z'\""
    assert "etag" not in answers[1][1]


def test_a_failed_operation_names_its_index_status_and_code():
    ((status, headers, body),) = parse_multipart('multipart/mixed; boundary="batchresponse_1"', FAILED)
    failure = _failure(status, headers, body)
    assert (failure.status_code, failure.index, failure.error_code) == (409, 2, "EntityAlreadyExists")


def test_an_error_body_that_is_not_json_still_gives_the_status():
    failure = _failure(500, {"x-ms-error-code": "InternalError"}, "<html>oops</html>")
    assert (failure.status_code, failure.error_code, failure.index) == (500, "InternalError", 0)
