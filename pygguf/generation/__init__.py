"""Generation: turning logits into text, one token loop for every front end."""
