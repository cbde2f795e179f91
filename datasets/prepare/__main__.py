from torchrec_automtl.datasets.prepare.cli import main

main()
