"""Development tools the product runs outside production (`make dev`) and the tests reuse."""
