"""Tools: the Tool type and decorator, JSON schemas from type hints, HTTP tools, built-ins."""
