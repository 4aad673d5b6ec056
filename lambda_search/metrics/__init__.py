"""How good a generator is: FID and KID scorers, and the statistics behind a confirmation."""
