"""ricom inside other tools: adapters that let a microscopist's own framework drive ricom's engine.

Each sub-module needs its framework as an optional extra and computes no physics itself:
`ricom.integrations.libertem` (``pip install 'ricom[libertem]'``) runs riCOM and the
centre of mass as LiberTEM UDFs.
"""
