"""Exact data match (EDM): recognise the company's own customers in what leaves.

``fields`` (what a value becomes before it is hashed), ``index`` (the memory-mapped table of
keyed hashes), ``build`` (streaming index builder), ``source`` (reading CSV and workbook
exports), ``match`` (the records of the table in one message), ``config`` (the policy's
``edm:`` section), ``cli`` (``dlp-policy edm``). See docs/edm.md.
"""
