
#compdef wbg

_wbg_completion() {
  eval $(env _TYPER_COMPLETE_ARGS="${words[1,$CURRENT]}" _WBG_COMPLETE=complete_zsh wbg)
}

compdef _wbg_completion wbg

