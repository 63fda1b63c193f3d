"""bbqrec.models"""
