"""The headline experiment's parts: configurations, measured quality over seeds, the page."""
