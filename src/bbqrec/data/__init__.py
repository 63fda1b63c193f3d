"""bbqrec.data"""
