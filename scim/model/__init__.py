"""The resource model: what a SCIM resource is, what a request may do to it, and what is wrong with it.

It owns the User and Group models built on scim2-models with the operator's declared schema
extensions (``resources``, ``schemafile``; RFC 7643), Entra's normalisation of what it sends
(``entra``), the limits every request is checked against before work starts (``limits``), unknown
attributes (``unknown``), the discovery documents (``discovery``; RFC 7644 §4), the record of a
change that the outbox, the audit trail and the change feed carry (``changes``), and the one error
hierarchy with its messages in SCIM terms (``errors``, ``messages``; RFC 7644 §3.12). Nothing here
does I/O or knows HTTP, Azure or storage. It may import only ``scim.logs``.
"""
