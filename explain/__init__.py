"""Explaining a MoDE model's predictions: which experts helped (Shapley values, Faith-Shap interactions), and on what evidence."""
