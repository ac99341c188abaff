"""ShowMaker backend."""
