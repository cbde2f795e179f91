from datasets.prepare.cli import main

main()
