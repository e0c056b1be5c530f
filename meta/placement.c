/* placeholder */ int meta_placeholder_;
