"""Inference: the prediction, detection and stream routes, their cache, admission and batchers.

May import api.accounts (who is calling), api.db, api.platform and serving/; never api.blog.
"""
