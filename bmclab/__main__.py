from bmclab.cli import main

main()
