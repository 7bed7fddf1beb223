"""Azure Storage Queue: where the change feed is published (``scim.feed.relay``).

The only module that imports ``azure.storage.queue``, and the only place its
errors are translated. Messages are Base64-encoded text — the encoding the
Azure Functions queue trigger expects by default — so a Functions app can
consume the feed with a plain queue trigger. A queue message holds at most
64 KiB, which Base64 leaves 48 KiB of JSON for (``scim.feed.relay.MAX_MESSAGE_BYTES``).
The queue is created on the first publish that finds it missing.
"""

from __future__ import annotations

import logging
from typing import Any

from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceExistsError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.storage.queue import TextBase64DecodePolicy, TextBase64EncodePolicy
from azure.storage.queue.aio import QueueClient

from scim.config import Settings
from scim.model.errors import ServiceUnavailableError

__all__ = ["QueuePublisher", "open_publisher", "open_reader"]

log = logging.getLogger(__name__)

_CLIENT_OPTIONS: dict[str, Any] = {"retry_total": 2, "connection_timeout": 3, "read_timeout": 10}


class QueuePublisher:
    """Sends the feed's messages to one queue."""

    def __init__(self, client: QueueClient, *, credential: Any = None) -> None:
        self._client = client
        self._credential = credential

    @property
    def name(self) -> str:
        """The queue's name."""
        return str(self._client.queue_name)

    async def send(self, message: str) -> None:
        """Publish one message (creating the queue the first time).

        Raises:
            ServiceUnavailableError: The queue service is unreachable or refused us.
        """
        for attempt in (1, 2):
            try:
                await self._client.send_message(message)
                return
            except ResourceNotFoundError:
                if attempt == 2:
                    raise ServiceUnavailableError("The change-feed queue could not be created.") from None
                await self._create()
            except (
                ServiceRequestError,
                ServiceResponseError,
                ClientAuthenticationError,
                HttpResponseError,
            ) as error:
                log.warning("Publishing to queue %s failed: %s", self.name, error.__class__.__name__)
                raise ServiceUnavailableError("The change-feed queue is unavailable.") from error

    async def _create(self) -> None:
        log.info("Creating queue %s", self.name)
        try:
            await self._client.create_queue()
        except ResourceExistsError:
            pass
        except (ServiceRequestError, ServiceResponseError, HttpResponseError) as error:
            # e.g. 403 with only the Message Sender role: the queue must be created by the deployment.
            log.warning(
                "Queue %s is missing and could not be created: %s", self.name, error.__class__.__name__
            )
            raise ServiceUnavailableError(f"The change-feed queue {self.name} is missing.") from error

    async def close(self) -> None:
        """Close the HTTP session (and the credential's, if it owns one)."""
        await self._client.close()
        if self._credential is not None:
            await self._credential.close()


def _client(settings: Settings, *, decode: bool = False) -> tuple[QueueClient, Any]:
    policies: dict[str, Any] = {"message_encode_policy": TextBase64EncodePolicy()}
    if decode:
        policies["message_decode_policy"] = TextBase64DecodePolicy()
    if settings.storage_connection_string:
        client = QueueClient.from_connection_string(
            settings.storage_connection_string, settings.change_queue, **policies, **_CLIENT_OPTIONS
        )
        return client, None
    from azure.identity.aio import DefaultAzureCredential  # only identity-based deployments pay for it

    credential = DefaultAzureCredential()
    client = QueueClient(
        settings.storage_queue_endpoint,
        settings.change_queue,
        credential=credential,
        **policies,
        **_CLIENT_OPTIONS,
    )
    return client, credential


def open_publisher(settings: Settings) -> QueuePublisher | None:
    """The publisher of the settings' change queue; None when the feed is off."""
    if not settings.change_queue:
        return None
    client, credential = _client(settings)
    return QueuePublisher(client, credential=credential)


def open_reader(settings: Settings) -> QueueClient:
    """A client that reads (and decodes) the change queue, for consumers and tests."""
    client, _ = _client(settings, decode=True)
    return client
