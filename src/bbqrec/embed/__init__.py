"""bbqrec.embed"""
