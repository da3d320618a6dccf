"""genlab's benchmarks: training throughput, start-up, evaluation throughput and quality on the MNIST
protocol, each measured against a baseline in the same run. Run them all with `make bench`
(`python -m benchmarks.run`)."""
