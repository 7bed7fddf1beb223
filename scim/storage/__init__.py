"""Storage: the repository port and its Azure Storage implementation, the only room that knows Azure.

It owns the port the service and the feed write through (``repository``: a Protocol and the row
types it speaks), its Table Storage implementation (``tables``: the row layout, transactions with
the outbox record of each change, ETags, translation of every SDK error into ``scim.model.errors``),
the lean ``$batch`` sender (``transactions``), filter push-down into OData (``pushdown``, private
to this room), the directory registry kept in the table (``directories``) and the change-feed
queue client (``queue``). Only ``tables`` and ``transactions`` import ``azure.data.tables``, only
``queue`` imports ``azure.storage.queue``, and no module outside this room imports either, nor
``pushdown`` or ``transactions``. It may import ``scim.model``, ``scim.config`` and ``scim.logs``.
"""
