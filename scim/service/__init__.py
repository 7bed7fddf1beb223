"""The SCIM service: RFC 7644 operations on resources, transport- and storage-neutral.

It owns create, read, replace, PATCH, delete and query (``operations``: ids, ``meta``, ETags and
``meta.version``, filters, sorting, paging by index or cursor, bounded scans, CPU work off the
event loop), the User and Group specifics (``users``, ``groups``), the membership protocol that
keeps a group's member edges and its members' reverse edges convergent under races
(``membership``), and the consistency checker that finds and repairs what a crash left
(``consistency``). It reaches storage only through the port ``scim.storage.repository``: it hands
over documents, index entries, change records and parsed filters, and never builds a storage
query. It may import ``scim.model``, ``scim.storage.repository`` and ``scim.logs``.
"""
