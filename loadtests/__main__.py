from loadtests.cli import main

main()
