from ragft.cli import main

main()
