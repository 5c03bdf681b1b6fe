"""leasehold.admin.v1: the inventory admin service, source and generated code."""
