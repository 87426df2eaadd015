# Entry points. Every target bootstraps .venv first; ENV picks inventories/$(ENV).py.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
ENV ?= local
INVENTORY := inventories/$(ENV).py
export PYTHONPATH := $(CURDIR)

.PHONY: venv deploy plan verify test unit check-migrations reset lint bench-gin bench-deploy bench-lo stop

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "make: $(PYTHON) not found (set PYTHON=...)"; exit 2; }
	@[ -x $(BIN)/python ] || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@touch $@

deploy: venv
	$(BIN)/pyinfra -y $(INVENTORY) deploy/provision.py
	@$(BIN)/pgprov-local urls $(INVENTORY)

# pgprov-plan prepares the same deploy as `pyinfra --dry`; exit 1 (changes pending) is a plan, not a failure.
plan: venv
	@$(BIN)/pgprov-plan $(INVENTORY) --format text $(PLAN_ARGS) || [ $$? -eq 1 ]

verify: venv
	$(BIN)/pgprov-verify $(INVENTORY) $(VERIFY_ARGS)

reset: venv
	$(BIN)/pgprov-local reset $(INVENTORY)
	$(BIN)/pyinfra -y $(INVENTORY) deploy/provision.py

test: venv
	$(BIN)/python -m pytest $(PYTEST_ARGS)

unit: venv
	$(BIN)/python -m pytest tests/unit $(PYTEST_ARGS)

check-migrations: venv
	$(BIN)/pgprov-check-migrations

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

bench-gin: venv
	$(BIN)/python bench/gin.py

bench-deploy: venv
	$(BIN)/python bench/deploy.py

bench-lo: venv
	$(BIN)/python bench/large_objects.py

stop: venv
	$(BIN)/pgprov-local stop
