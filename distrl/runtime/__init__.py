"""The Ray side of distrl: actors that move data and weights. No algorithm math lives here."""
