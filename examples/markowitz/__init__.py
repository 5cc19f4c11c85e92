"""Markowitz portfolio policy tuning on historical S&P 500 prices (via ``skfolio``)."""
