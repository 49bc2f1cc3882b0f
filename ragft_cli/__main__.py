from ragft_cli import main

main()
