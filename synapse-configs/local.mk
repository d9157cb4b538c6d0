# The default deployment, installed for `cmi run` without a folder
# (CMI_DEPLOY_DIR).  An operator edits it in place: `make install` adds
# the files that are missing and never overwrites one (a reinstall keeps
# the edits); `make uninstall` removes the files that are still as shipped.
deploydir = $(sysconfdir)/cmi/synapse-configs/default
DEPLOY_FILES = \
	synapse-configs/default/api/HealthAPI.xml \
	synapse-configs/default/api/HelloAPI.xml \
	synapse-configs/default/api/OrdersAPI.xml \
	synapse-configs/default/api/PublishMessageAPI.xml \
	synapse-configs/default/local-entries/RabbitMQConnection.xml \
	synapse-configs/default/sequences/fault.xml \
	synapse-configs/default/sequences/orderFault.xml \
	synapse-configs/default/sequences/validateOrder.xml
EXTRA_DIST += $(DEPLOY_FILES)

install-data-local: install-deployment
install-deployment:
	@for f in $(DEPLOY_FILES); do \
	  rel=$${f#synapse-configs/default/}; dest="$(DESTDIR)$(deploydir)/$$rel"; \
	  if test -e "$$dest"; then echo "  KEEP     $$dest (an installed file is never overwritten)"; continue; fi; \
	  $(MKDIR_P) "$$(dirname "$$dest")" && $(INSTALL_DATA) "$(srcdir)/$$f" "$$dest" || exit 1; \
	done

uninstall-local: uninstall-deployment
uninstall-deployment:
	@for f in $(DEPLOY_FILES); do \
	  rel=$${f#synapse-configs/default/}; dest="$(DESTDIR)$(deploydir)/$$rel"; \
	  if test -e "$$dest" && cmp -s "$(srcdir)/$$f" "$$dest"; then rm -f "$$dest"; fi; \
	done

.PHONY: install-deployment uninstall-deployment
