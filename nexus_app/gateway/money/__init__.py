"""Money: prices, billing, free credit, the promotional pool, deposits, payouts, solvency."""
