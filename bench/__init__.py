"""The fetchtop benchmark: fetchtop against curl, wget, aria2c and axel on a local nginx (issue 6)."""
