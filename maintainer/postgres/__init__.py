"""The one interface maintainer has to PostgreSQL: connections, versions,
snapshots, inventories (row and object counts) and the dump client processes."""
