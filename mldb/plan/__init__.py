"""Planning: rewrite rules for mldb functions, steps for mldb statements, hooks around writes."""
