x = 1
undefined_name  # a NameError on import
