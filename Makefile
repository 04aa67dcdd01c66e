# The two commands of README.md. Everything they need is installed on first use.
.PHONY: dev test
dev:
	./scripts/dev.sh
test:
	./scripts/test.sh
.PHONY: bench
bench:
	./scripts/bench.sh
