"""The public mapping's parts that speak to no engine: options, lifecycle."""
