from lambda_search.cli import entry_point

entry_point()
