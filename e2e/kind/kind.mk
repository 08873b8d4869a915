# The kind path, for machines with Docker: images, a kind cluster, deploy, e2e.
#   make kind-up images kind-load deploy e2e-kind
# (Not exercised on the project's own machines, which have no container engine.)

KIND          ?= kind
KIND_CLUSTER  ?= modelhub
IMAGE_REGISTRY ?= ghcr.io/modelhub
IMAGE_TAG     ?= dev
DOCKER        ?= docker
# image name | cargo package | binary | Dockerfile target
KIND_IMAGES   := modelhub-operator|modelhub-operator|modelhub-operator|plain \
                 tinyinfer|tinyinfer|tinyinfer|with-ort \
                 vectorforge|vectorforge-server|vectorforge|plain \
                 gateway|gateway|gateway|plain

.PHONY: images kind-up kind-load deploy e2e-kind kind-down
images: ## build the container images (needs Docker)
	for spec in $(KIND_IMAGES); do IFS='|' read -r name pkg bin target <<< "$$spec"; \
	  $(DOCKER) build -f e2e/kind/Dockerfile --target $$target --build-arg PACKAGE=$$pkg --build-arg BIN=$$bin \
	    -t $(IMAGE_REGISTRY)/$$name:$(IMAGE_TAG) . ; done

kind-up: ## create the kind cluster (needs Docker and kind)
	$(KIND) get clusters | grep -qx $(KIND_CLUSTER) || $(KIND) create cluster --name $(KIND_CLUSTER) --wait 120s

kind-load: ## load the images into the kind cluster
	for spec in $(KIND_IMAGES); do IFS='|' read -r name _ _ _ <<< "$$spec"; \
	  $(KIND) load docker-image $(IMAGE_REGISTRY)/$$name:$(IMAGE_TAG) --name $(KIND_CLUSTER); done

deploy: ## install CRDs, RBAC and the operator (images tagged $(IMAGE_TAG)) with Helm into the current context
	$(HELM) upgrade --install modelhub charts/modelhub -n modelhub-system --create-namespace \
	  --set image.tag=$(IMAGE_TAG) --set workloadImages.tag=$(IMAGE_TAG) --set image.pullPolicy=IfNotPresent --wait

e2e-kind: ## operator e2e tests against the kind cluster's in-cluster operator
	mkdir -p $(STATE_DIR) && $(KIND) get kubeconfig --name $(KIND_CLUSTER) > $(STATE_DIR)/kind.kubeconfig
	KUBECONFIG=$(STATE_DIR)/kind.kubeconfig E2E_EXTERNAL_OPERATOR=1 KUBECTL=$(KUBECTL) HELM=$(HELM) CARGO=$(CARGO) e2e/operator-e2e.sh

kind-down: ## delete the kind cluster
	$(KIND) delete cluster --name $(KIND_CLUSTER)
