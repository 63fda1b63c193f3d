"""bbqrec.evaluation"""
