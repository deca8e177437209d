"""Service discovery: one interface (register an instance, watch a service), several backends."""
