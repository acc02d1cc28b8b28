"""Exit codes of the `pqscep` command, which scripts can rely on (also in the README). In a module
of their own so that subcommand modules need not import `cli.main`, which imports them."""

EXIT_OK = 0
EXIT_FAILURE = 1  # the CA answered FAILURE, or the operation failed
EXIT_USAGE = 2  # bad command line (Click's own code), or a key this CA cannot use
EXIT_PENDING = 3  # the CA answered PENDING: run `pqscep poll` later
EXIT_TRANSPORT = 4  # could not reach the server, or it answered with an HTTP error
EXIT_VERIFY = 5  # a signature, pin or decryption check failed
