"""One module per dataset kind or family; registered in :mod:`clproto.data.sources`."""
