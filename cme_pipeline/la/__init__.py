"""The LA-side services: intake of a delivery, minimisation, clerical review and retention.

Each takes a ``Home`` (the composition root's services) and touches tables only through
``store/`` functions, so the rules that make deletion real (a deleted retained row owes a key
rotation; SQLite's freed pages are zeroed) hold in one place.
"""
