"""PyEPO's 2-dimensional knapsack benchmark: the shortest-path harness on a second task."""
