"""Small utilities below every model part: all-reduce helpers, event logging."""
