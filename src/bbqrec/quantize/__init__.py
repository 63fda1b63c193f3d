"""bbqrec.quantize"""
