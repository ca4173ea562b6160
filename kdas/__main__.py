"""`python -m kdas` and `torchrun -m kdas ...` enter the same CLI as the `kdas` script."""

from kdas.cli.app import main

if __name__ == "__main__":
    main()
