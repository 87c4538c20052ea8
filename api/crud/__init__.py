"""Database operations, one module per table; routes call these, never raw queries."""
