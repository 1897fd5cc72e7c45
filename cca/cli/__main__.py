from cca.cli import main

main()
