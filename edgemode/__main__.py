from edgemode.cli import main

main()
