"""Small arithmetic helpers shared by the datapath blocks."""

__all__ = ["balanced_sum"]


def balanced_sum(values):
    """Sum as a balanced adder tree: log-depth logic and no deep expression recursion."""
    values = list(values)
    if not values:
        return 0
    while len(values) > 1:
        values = [values[k] + values[k + 1] if k + 1 < len(values) else values[k]
                  for k in range(0, len(values), 2)]
    return values[0]
