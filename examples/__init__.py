"""Examples of using lambda-search with one's own networks and training loop (see the README's "Your own GAN")."""
