"""The PyTorch front end: the ``nn.Module`` and the custom operators behind it.

``layer`` (:class:`~cvxlpgd.torch.layer.CvxpyLayer`), ``operators`` (custom operators
and autograd functions for ``torch.func`` and ``torch.compile``), ``calls`` (one call's
forward solve and backward pass in NumPy terms), ``inputs`` (tensor checks),
``log_transform`` (``gp=True``), ``persistence`` (copies and pickles).
"""
